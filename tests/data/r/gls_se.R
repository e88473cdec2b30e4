# Golden master for skrobust._cov_gaussian: nlme::gls maximum-likelihood fits
# with an exponential variance function, log sd linear in covariates:
#   engel:     foodexp ~ income,  weights = varExp(form = ~ income)
#   stackloss: stack.loss ~ .,    weights = varComb(varExp(form = ~ Air.Flow),
#                                                   varExp(form = ~ Water.Temp))
# varExp models sd_i = sigma exp(t x_i), i.e. log sigma_i^2 = 2 log sigma +
# 2 t x_i. Stored: the data, coefficients, variance parameters, sigma, vcov
# (the covariance of the mean coefficients gls reports) and apVar (gls's
# approximate covariance of (t..., log sigma), from a numerical Hessian of
# the profiled log-likelihood).
#
# Run from the repository root:
#   Rscript tests/data/r/gls_se.R
# It writes tests/data/r/gls_se.json with 17 significant digits.
suppressPackageStartupMessages(library(nlme))

json <- function(x) {
  if (is.null(x)) return("null")
  if (is.list(x)) {
    items <- vapply(x, json, "")
    if (is.null(names(x))) return(paste0("[", paste(items, collapse = ","), "]"))
    return(paste0("{", paste0("\"", names(x), "\":", items, collapse = ","), "}"))
  }
  if (is.matrix(x)) {
    return(json(lapply(seq_len(nrow(x)), function(i) as.vector(x[i, ]))))
  }
  x <- unname(x)
  if (is.character(x)) {
    items <- paste0("\"", x, "\"")
  } else {
    items <- ifelse(is.finite(x), sprintf("%.17g", x), "null")
  }
  if (length(x) == 1) items else paste0("[", paste(items, collapse = ","), "]")
}

data(engel, package = "quantreg")
data(stackloss, package = "datasets")

control <- glsControl(maxIter = 500, msMaxIter = 500, tolerance = 1e-12,
                      msTol = 1e-12, returnObject = FALSE)

describe <- function(fit, data, mean_columns, variance_columns) {
  list(
    data = list(columns = as.list(names(data)), values = unname(as.matrix(data))),
    mean_columns = as.list(mean_columns),
    variance_columns = as.list(variance_columns),
    coefficients = as.list(coef(fit)),
    # One t per variance covariate, in the order of variance_columns.
    var_exp_t = as.list(unlist(coef(fit$modelStruct$varStruct,
                                    unconstrained = FALSE))),
    sigma = fit$sigma,
    log_likelihood = as.numeric(logLik(fit)),
    n_obs = nrow(data),
    vcov = unclass(vcov(fit)),
    ap_var = unclass(fit$apVar)
  )
}

engel_fit <- gls(foodexp ~ income, data = engel,
                 weights = varExp(form = ~ income), method = "ML",
                 control = control)
stackloss_fit <- gls(stack.loss ~ Air.Flow + Water.Temp + Acid.Conc.,
                     data = stackloss,
                     weights = varComb(varExp(form = ~ Air.Flow),
                                       varExp(form = ~ Water.Temp)),
                     method = "ML", control = control)

result <- list(
  generated_by = "tests/data/r/gls_se.R",
  r_version = R.version.string,
  nlme_version = as.character(packageVersion("nlme")),
  engel = describe(engel_fit, engel, "income", "income"),
  stackloss = describe(
    stackloss_fit, stackloss,
    c("Air.Flow", "Water.Temp", "Acid.Conc."), c("Air.Flow", "Water.Temp")
  )
)
writeLines(json(result), "tests/data/r/gls_se.json")
