# Reference fits for tests/test_coming_from.py, by the R packages that
# docs/user_guide/coming_from.rst maps onto skrobust. Run from this directory:
#
#     Rscript coming_from.R > coming_from.json
#
# The data are R's own copies (stackloss from package datasets, engel from
# quantreg); the test checks that statsmodels' copies have the same column
# sums before comparing fits.
suppressPackageStartupMessages({
  library(MASS)
  library(quantreg)
  library(conquer)
  library(nlme)
  library(jsonlite)
})
data(engel, package = "quantreg")

out <- list()
out$versions <- list(
  R = R.version.string,
  MASS = as.character(packageVersion("MASS")),
  quantreg = as.character(packageVersion("quantreg")),
  conquer = as.character(packageVersion("conquer")),
  nlme = as.character(packageVersion("nlme"))
)
out$column_sums <- list(stackloss = colSums(stackloss), engel = colSums(engel))

# MASS::rlm, Huber's psi with k = 1.345 and the MAD scale (its defaults but
# k), iterated to a tight fixed point, and with rlm's default accuracy.
tight <- rlm(stack.loss ~ ., data = stackloss, psi = psi.huber, k = 1.345,
             scale.est = "MAD", acc = 1e-13, maxit = 1000)
default <- rlm(stack.loss ~ ., data = stackloss, k = 1.345)
out$rlm <- list(coef = unname(coef(tight)), scale = tight$s,
                coef_default_acc = unname(coef(default)))

# quantreg::rq, Barrodale-Roberts simplex: an exact LP solution.
out$rq <- lapply(c(0.1, 0.5, 0.9), function(tau) {
  fit <- rq(foodexp ~ income, tau = tau, data = engel, method = "br")
  list(tau = tau, coef = unname(coef(fit)))
})

# conquer: convolution-smoothed quantile regression, Gaussian kernel, at its
# default bandwidth max(((log n + p) / n)^0.4, 0.05) in the units of y, solved
# tightly.
X <- as.matrix(engel$income)
n <- nrow(X); p <- ncol(X)
h <- max(((log(n) + p) / n)^0.4, 0.05)
out$conquer <- lapply(c(0.25, 0.5), function(tau) {
  fit <- conquer(X, engel$foodexp, tau = tau, kernel = "Gaussian", h = h,
                 tol = 1e-12, iteMax = 100000)
  list(tau = tau, h = h, coef = unname(fit$coeff))
})

# nlme::gls by maximum likelihood with an exponential variance function of
# income: Var(e_i) = sigma^2 exp(2 t income_i).
fit <- gls(foodexp ~ income, data = engel, method = "ML",
           weights = varExp(form = ~income),
           control = glsControl(tolerance = 1e-12, msTol = 1e-12,
                                maxIter = 1000, msMaxIter = 1000))
out$gls <- list(coef = unname(coef(fit)), sigma = fit$sigma,
                t = unname(coef(fit$modelStruct$varStruct, unconstrained = FALSE)),
                logLik = as.numeric(logLik(fit)))

cat(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE), "\n")
