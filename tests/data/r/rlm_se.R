# Golden master for skrobust._cov_mestimator: MASS::rlm (Huber, k = 1.345,
# MAD scale) on stackloss, with the standard errors of MASS::summary.rlm
# (method "XtX", unweighted and with case weights) and the sandwich of R's
# sandwich package (sandwich::sandwich, HC0).
#
# Run from the repository root:
#   Rscript tests/data/r/rlm_se.R
# It writes tests/data/r/rlm_se.json with 17 significant digits (jsonlite
# stops at 15, hence the small writer below).
suppressPackageStartupMessages({
  library(MASS)
  library(sandwich)
})

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

data(stackloss, package = "datasets")
# Case weights 1, 2, 3, 1, 2, 3, ...: each row counted that many times.
case_weights <- rep(c(1, 2, 3), length.out = nrow(stackloss))

fit_rlm <- function(weights) {
  # Tight IRLS convergence so that the fit is the fixed point itself.
  if (is.null(weights)) {
    rlm(stack.loss ~ ., data = stackloss, psi = psi.huber, k = 1.345,
        scale.est = "MAD", acc = 1e-14, maxit = 1000)
  } else {
    rlm(stack.loss ~ ., data = stackloss, weights = weights, wt.method = "case",
        psi = psi.huber, k = 1.345, scale.est = "MAD", acc = 1e-14, maxit = 1000)
  }
}

describe <- function(fit, weights) {
  s <- summary(fit)
  out <- list(
    weights = if (is.null(weights)) NULL else as.list(weights),
    coefficients = as.list(coef(fit)),
    scale = fit$s,
    converged = fit$converged,
    summary_rlm_se = as.list(s$coefficients[, "Std. Error"])
  )
  if (is.null(weights)) {
    # sandwich's bread.rlm squares case weights: unweighted only.
    out$sandwich_hc0 <- sandwich(fit)
  }
  out
}

result <- list(
  generated_by = "tests/data/r/rlm_se.R",
  r_version = R.version.string,
  mass_version = as.character(packageVersion("MASS")),
  sandwich_version = as.character(packageVersion("sandwich")),
  data = list(
    columns = as.list(names(stackloss)),
    values = unname(as.matrix(stackloss))
  ),
  unweighted = describe(fit_rlm(NULL), NULL),
  case_weighted = describe(fit_rlm(case_weights), case_weights)
)
writeLines(json(result), "tests/data/r/rlm_se.json")
