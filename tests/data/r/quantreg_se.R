# Golden master for skrobust._cov_quantile: R quantreg's summary.rq standard
# errors (se = "iid", "nid", "ker"; hs = TRUE / FALSE) on engel and stackloss.
#
# Run from the repository root:
#   Rscript tests/data/r/quantreg_se.R
# It writes tests/data/r_quantreg_se.json. Numbers are printed with 17
# significant digits (sprintf "%.17g"), so they read back as the same
# doubles; jsonlite 1.8 stops at 15 digits, hence the small writer below.
suppressPackageStartupMessages(library(quantreg))

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
  } else if (is.logical(x)) {
    items <- ifelse(x, "true", "false")
  } else {
    items <- ifelse(is.finite(x), sprintf("%.17g", x), "null")
  }
  # Length-one vectors are written as scalars, wrapped ones (as.list) as arrays.
  if (length(x) == 1) items else paste0("[", paste(items, collapse = ","), "]")
}

data(engel, package = "quantreg")
data(stackloss, package = "datasets")

# Fixed positive weights for the weighted cases (R's rq weights: each row of
# x and y is multiplied by its weight, see rq.wfit and summary.rq).
engel_weights <- 1 + (seq_len(nrow(engel)) %% 4) / 2
stackloss_weights <- c(1, 2, 3)[seq_len(nrow(stackloss)) %% 3 + 1]
# Zero weights: summary.rq keeps those rows (n counts them; their weighted
# residuals are zeros, which "iid" skips with the interpolated ones).
engel_zero_weights <- ifelse(seq_len(nrow(engel)) %% 10 == 0, 0, engel_weights)

problems <- list(
  list(dataset = "engel", formula = foodexp ~ income, data = engel,
       weights = NULL, taus = c(0.25, 0.5, 0.75)),
  # tau = 0.1 with n = 21: the Hall-Sheather bandwidth (0.125) exceeds tau,
  # so summary.rq halves it until tau - h >= 0.
  list(dataset = "stackloss", formula = stack.loss ~ ., data = stackloss,
       weights = NULL, taus = c(0.1, 0.25, 0.5, 0.75)),
  list(dataset = "engel", formula = foodexp ~ income, data = engel,
       weights = engel_weights, taus = c(0.25, 0.5)),
  list(dataset = "engel", formula = foodexp ~ income, data = engel,
       weights = engel_zero_weights, taus = c(0.5)),
  # Without an intercept.
  list(dataset = "engel", formula = foodexp ~ income - 1, data = engel,
       weights = NULL, taus = c(0.5)),
  list(dataset = "stackloss", formula = stack.loss ~ ., data = stackloss,
       weights = stackloss_weights, taus = c(0.5, 0.75))
)

# The bandwidth summary.rq uses for "nid" and "ker", on the quantile scale.
halved_bandwidth <- function(tau, n, hs) {
  h <- bandwidth.rq(tau, n, hs = hs)
  while ((tau - h < 0) || (tau + h > 1)) h <- h / 2
  h
}

cases <- list()
for (problem in problems) {
  for (tau in problem$taus) {
    if (is.null(problem$weights)) {
      fit <- rq(problem$formula, tau = tau, data = problem$data)
    } else {
      fit <- rq(problem$formula, tau = tau, data = problem$data,
                weights = problem$weights)
    }
    x <- model.matrix(terms(fit), model.frame(fit))
    y <- model.response(model.frame(fit))
    wt <- if (is.null(problem$weights)) rep(1, length(y)) else problem$weights
    for (hs in c(TRUE, FALSE)) {
      for (se in c("iid", "nid", "ker")) {
        messages <- character(0)
        s <- withCallingHandlers(
          summary(fit, se = se, hs = hs, covariance = TRUE),
          warning = function(w) {
            messages <<- c(messages, conditionMessage(w))
            invokeRestart("muffleWarning")
          }
        )
        case <- list(
          dataset = problem$dataset,
          intercept = attr(terms(fit), "intercept") == 1,
          weighted = !is.null(problem$weights),
          weights = problem$weights,
          tau = tau, hs = hs, se = se,
          coef = as.list(coef(fit)),
          std_error = as.list(s$coefficients[, 2]),
          cov = s$cov,
          scale = s$scale,
          bandwidth = bandwidth.rq(tau, length(y), hs = hs),
          warnings = as.list(messages)
        )
        if (se == "nid") {
          # The two refits summary.rq makes (same call, same method "br"),
          # so that the formula can be tested at R's own fits.
          h <- halved_bandwidth(tau, length(y), hs)
          case$nid_h <- h
          case$coef_hi <- as.list(rq.fit(x * wt, y * wt, tau = tau + h)$coef)
          case$coef_lo <- as.list(rq.fit(x * wt, y * wt, tau = tau - h)$coef)
        }
        cases[[length(cases) + 1]] <- case
      }
    }
  }
}

# rq.fit.br on small problems with many ties, where the optimum is often
# not unique: the vertex R's simplex returns, to test the port of its
# pivoting rules that the "iid" sparsity uses.
set.seed(20261206)
simplex_cases <- list()
for (r in 1:40) {
  m <- sample(c(7, 10, 25), 1)
  p <- sample(2:3, 1)
  tau <- sample(c(0.3, 0.5, 0.8), 1)
  x <- cbind(1, matrix(sample(0:3, m * (p - 1), replace = TRUE), m))
  if (qr(x)$rank < p) next
  y <- if (r %% 2) round(rnorm(m)) else sort(round(rnorm(m), 1))
  nonunique <- FALSE
  coefs <- withCallingHandlers(rq.fit.br(x, y, tau)$coefficients,
    warning = function(w) {
      nonunique <<- TRUE
      invokeRestart("muffleWarning")
    })
  simplex_cases[[length(simplex_cases) + 1]] <- list(
    x = x, y = y, tau = tau, coef = as.list(coefs), nonunique = nonunique)
}

# summary.rq(se = "boot") (boot.rq, xy pairs) with many replicates: a
# reference for the bootstrap helper up to Monte Carlo error.
set.seed(1)
boot_fit <- rq(foodexp ~ income, tau = 0.5, data = engel)
boot_se <- summary(boot_fit, se = "boot", bsmethod = "xy", R = 4000)$coefficients[, 2]

# Coverage of 95% normal intervals at q = 0.5, n = 200: y = 1 + 2 x + s(x) e,
# e ~ N(0, 1), x ~ U(0, 4), with s = 1 (iid errors) or s = 0.5 + 0.5 x
# (heteroscedastic, conditional quantiles still linear in x). The Python
# simulation draws its own numbers; both estimate the same probabilities.
set.seed(2)
n_sim <- 200
coverage_reps <- 2000
z <- qnorm(0.975)
hits <- list(iid_iid = c(0, 0), heteroscedastic_iid = c(0, 0),
             heteroscedastic_nid = c(0, 0), heteroscedastic_ker = c(0, 0))
for (r in seq_len(coverage_reps)) {
  xs <- runif(n_sim, 0, 4)
  e <- rnorm(n_sim)
  for (errors in c("iid", "heteroscedastic")) {
    ys <- 1 + 2 * xs + (if (errors == "iid") 1 else 0.5 + 0.5 * xs) * e
    sim_fit <- rq(ys ~ xs, tau = 0.5)
    for (se in if (errors == "iid") "iid" else c("iid", "nid", "ker")) {
      s <- suppressWarnings(summary(sim_fit, se = se))$coefficients
      key <- paste(errors, se, sep = "_")
      hits[[key]] <- hits[[key]] + (abs(s[, 1] - c(1, 2)) <= z * s[, 2])
    }
  }
}
coverage <- lapply(hits, function(h) as.list(h / coverage_reps))

# For the user guide: with sd = 0.5 + |x|, x ~ N(0, 1), the conditional
# quantiles at q +- h are not linear in x and "nid" undercovers.
set.seed(3)
misspecified_hits <- list(nid = c(0, 0), ker = c(0, 0))
for (r in 1:1000) {
  xs <- rnorm(n_sim)
  ys <- 1 + 2 * xs + (0.5 + abs(xs)) * rnorm(n_sim)
  sim_fit <- rq(ys ~ xs, tau = 0.5)
  for (se in c("nid", "ker")) {
    s <- suppressWarnings(summary(sim_fit, se = se))$coefficients
    misspecified_hits[[se]] <- misspecified_hits[[se]] +
      (abs(s[, 1] - c(1, 2)) <= z * s[, 2])
  }
}
misspecified <- lapply(misspecified_hits, function(h) as.list(h / 1000))

out <- list(
  generated_by = "tests/data/r/quantreg_se.R",
  r_version = R.version.string,
  quantreg_version = as.character(packageVersion("quantreg")),
  data = list(
    engel = list(columns = as.list(names(engel)),
                 values = as.matrix(engel)),
    stackloss = list(columns = as.list(names(stackloss)),
                     values = as.matrix(stackloss))
  ),
  cases = cases,
  simplex_cases = simplex_cases,
  boot = list(dataset = "engel", tau = 0.5, R = 4000, bsmethod = "xy",
              std_error = as.list(boot_se)),
  coverage = list(n = n_sim, reps = coverage_reps, tau = 0.5, level = 0.95,
                  rates = coverage,
                  abs_x_heteroscedastic_rates = misspecified)
)
writeLines(json(out), "tests/data/r_quantreg_se.json")
