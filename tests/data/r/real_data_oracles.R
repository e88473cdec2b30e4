# Reference fits for tests/test_real_data_oracles.py: R's quantreg, MASS and
# nlme on the real data sets that statsmodels and scikit-learn ship, read
# from the very files those packages install (so that R and Python see the
# same numbers; the test checks the column sums stored here).
#
# Run from the repository root:
#
#   Rscript tests/data/r/real_data_oracles.R \
#     "$(python -c 'import statsmodels.datasets as d, os; print(os.path.dirname(d.__file__))')" \
#     "$(python -c 'import sklearn.datasets as d, os; print(os.path.join(os.path.dirname(d.__file__), "data"))')"
#
# It writes tests/data/r/real_data_oracles.json with 17 significant digits
# (jsonlite stops at 15, hence the small writer below).
#
# Each data set is fitted on its raw columns and on its columns standardised
# (centred, divided by the population standard deviation, as scikit-learn's
# StandardScaler does); the target is never transformed.
suppressPackageStartupMessages({
  library(quantreg)
  library(MASS)
  library(nlme)
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
  } else if (is.logical(x)) {
    items <- ifelse(x, "true", "false")
  } else {
    items <- ifelse(is.finite(x), sprintf("%.17g", x), "null")
  }
  if (length(x) == 1) items else paste0("[", paste(items, collapse = ","), "]")
}

args <- commandArgs(trailingOnly = TRUE)
statsmodels_dir <- args[1]
sklearn_data_dir <- args[2]
read_sm <- function(folder, file) read.csv(file.path(statsmodels_dir, folder, file))

# name -> list(y, X (matrix), w (case weights or NULL)), as in the test.
load_data <- function() {
  out <- list()
  d <- read_sm("stackloss", "stackloss.csv")
  out$stackloss <- list(y = d$STACKLOSS, X = d[, c("AIRFLOW", "WATERTEMP", "ACIDCONC")])
  d <- read_sm("engel", "engel.csv")
  out$engel <- list(y = d$foodexp, X = d[, "income", drop = FALSE])
  d <- read_sm("longley", "longley.csv")
  out$longley <- list(y = d$TOTEMP,
                      X = d[, c("GNPDEFL", "GNP", "UNEMP", "ARMED", "POP", "YEAR")])
  d <- read_sm("ccard", "ccard.csv")
  out$ccard <- list(y = d$AVGEXP, X = d[, c("AGE", "INCOME", "INCOMESQ", "OWNRENT")])
  d <- read_sm("copper", "copper.csv")
  out$copper <- list(y = d$WORLDCONSUMPTION,
                     X = d[, c("COPPERPRICE", "INCOMEINDEX", "ALUMPRICE",
                               "INVENTORYINDEX", "TIME")])
  d <- read_sm("scotland", "scotvote.csv")
  out$scotland <- list(y = d$YES,
                       X = d[, c("COUTAX", "UNEMPF", "MOR", "ACT", "GDP", "AGE",
                                 "COUTAX_FEMALEUNEMP")])
  d <- read_sm("statecrime", "statecrime.csv")
  out$statecrime <- list(y = d$murder, X = d[, c("urban", "poverty", "hs_grad", "single")])
  d <- read_sm("committee", "committee.csv")
  out$committee <- list(y = d$BILLS104,
                        X = d[, c("SIZE", "SUBS", "STAFF", "PRESTIGE", "BILLS103")])
  d <- read_sm("cpunish", "cpunish.csv")
  out$cpunish <- list(y = d$EXECUTIONS,
                      X = d[, c("INCOME", "PERPOVERTY", "PERBLACK", "VC100k96",
                                "SOUTH", "DEGREE")])
  d <- read_sm("grunfeld", "grunfeld.csv")
  out$grunfeld <- list(y = d$invest, X = d[, c("value", "capital")])
  # Proportion of a school's pupils above the national median in maths,
  # weighted by the number of pupils tested (the binomial denominator).
  d <- read_sm("star98", "star98.csv")
  out$star98 <- list(y = d$PR50M / d$MATHTOT, X = d[, 3:ncol(d)], w = d$MATHTOT)
  d <- read_sm("fair", "fair.csv")
  out$fair <- list(y = d$affairs, X = d[, 1:8])
  X <- as.matrix(read.table(file.path(sklearn_data_dir, "diabetes_data_raw.csv.gz")))
  y <- scan(file.path(sklearn_data_dir, "diabetes_target.csv.gz"), quiet = TRUE)
  out$diabetes <- list(y = y, X = X)
  for (name in names(out)) out[[name]]$X <- unname(as.matrix(out[[name]]$X))
  out
}

standardise <- function(X) {
  centred <- sweep(X, 2, colMeans(X))
  sweep(centred, 2, sqrt(colMeans(centred^2)), "/")
}

# The design: X or X standardised, with or without a leading column of ones.
design <- function(data, variant, intercept) {
  X <- if (variant == "std") standardise(data$X) else data$X
  if (intercept) cbind(1, X) else X
}

quietly <- function(expr) {
  caught <- character(0)
  value <- withCallingHandlers(expr, warning = function(w) {
    caught <<- c(caught, conditionMessage(w))
    invokeRestart("muffleWarning")
  })
  list(value = value, warnings = caught)
}

data_sets <- load_data()
out <- list(
  generated_by = "tests/data/r/real_data_oracles.R",
  r_version = R.version.string,
  versions = list(quantreg = as.character(packageVersion("quantreg")),
                  MASS = as.character(packageVersion("MASS")),
                  nlme = as.character(packageVersion("nlme"))),
  column_sums = lapply(data_sets, function(d)
    c(colSums(d$X), sum(d$y), if (is.null(d$w)) NULL else sum(d$w)))
)

# quantreg::rq.fit.br (Barrodale-Roberts simplex, rq's default): a vertex of
# the linear programme, with its warning when the optimum may be non-unique.
# Weights as rq's: rows of x and y multiplied by them. summary.rq standard
# errors (hs = TRUE, rq's default) for the unique fits with an intercept at
# the central quantiles.
rq_cases <- list()
for (name in names(data_sets)) {
  data <- data_sets[[name]]
  for (variant in c("raw", "std")) for (intercept in c(TRUE, FALSE)) {
    x <- design(data, variant, intercept)
    for (tau in c(0.1, 0.25, 0.5, 0.75, 0.9)) {
      w <- if (is.null(data$w)) rep(1, length(data$y)) else data$w
      fit <- quietly(rq.fit.br(x * w, data$y * w, tau = tau))
      case <- list(dataset = name, variant = variant, intercept = intercept,
                   tau = tau, coef = fit$value$coefficients,
                   warnings = as.list(fit$warnings))
      if (intercept && tau %in% c(0.25, 0.5, 0.75) && length(fit$warnings) == 0) {
        rq_object <- if (is.null(data$w)) rq(data$y ~ x - 1, tau = tau)
                     else rq(data$y ~ x - 1, tau = tau, weights = data$w)
        for (se in c("iid", "nid", "ker")) {
          # summary.rq can fail (a singular Gram matrix on ill-conditioned
          # raw columns): no reference then.
          s <- tryCatch(quietly(summary(rq_object, se = se, covariance = TRUE)),
                        error = function(e) NULL)
          if (is.null(s)) next
          case[[paste0("se_", se)]] <- unname(s$value$coefficients[, 2])
          case[[paste0("se_", se, "_warnings")]] <- as.list(s$warnings)
        }
      }
      rq_cases[[length(rq_cases) + 1]] <- case
    }
  }
}
out$rq <- rq_cases

# MASS::rlm with Huber's psi, k = 1.345 and the MAD scale (median |r| /
# 0.6745), iterated to a tight fixed point; case weights as frequencies.
# summary.rlm's standard errors ("XtX", the "mass" covariance).
rlm_cases <- list()
for (name in names(data_sets)) {
  data <- data_sets[[name]]
  for (variant in c("raw", "std")) for (intercept in c(TRUE, FALSE)) {
    x <- design(data, variant, intercept)
    fit <- if (is.null(data$w)) {
      quietly(rlm(x, data$y, psi = psi.huber, k = 1.345, scale.est = "MAD",
                  acc = 1e-13, maxit = 5000))
    } else {
      quietly(rlm(x, data$y, weights = data$w, wt.method = "case",
                  psi = psi.huber, k = 1.345, scale.est = "MAD",
                  acc = 1e-13, maxit = 5000))
    }
    s <- summary(fit$value)
    rlm_cases[[length(rlm_cases) + 1]] <- list(
      dataset = name, variant = variant, intercept = intercept,
      coef = unname(coef(fit$value)), scale = fit$value$s,
      converged = fit$value$converged, warnings = as.list(fit$warnings),
      se_mass = unname(s$coefficients[, 2]))
  }
}
out$rlm <- rlm_cases

# nlme::gls by maximum likelihood with log-linear variances: varExp(form =
# ~ x_j) for each variance column (combined with varComb), so that
# log Var(e_i) = 2 log sigma + sum_j 2 t_j x_ij. Columns are 0-based indices
# into X. Tight optimiser tolerances.
control <- glsControl(maxIter = 1000, msMaxIter = 1000, tolerance = 1e-13,
                      msTol = 1e-13, returnObject = TRUE)
gls_problems <- list(
  list(dataset = "ccard", variant = "raw", columns = c(1)),
  list(dataset = "grunfeld", variant = "raw", columns = c(0)),
  list(dataset = "statecrime", variant = "std", columns = c(1, 3)),
  list(dataset = "diabetes", variant = "std", columns = c(2, 8)),
  list(dataset = "copper", variant = "std", columns = c(0, 4))
)
gls_cases <- list()
for (problem in gls_problems) {
  data <- data_sets[[problem$dataset]]
  X <- design(data, problem$variant, FALSE)
  frame <- data.frame(y = data$y, X)
  names(frame) <- c("y", paste0("x", seq_len(ncol(X)) - 1))
  mean_formula <- as.formula(paste("y ~", paste(names(frame)[-1], collapse = " + ")))
  var_terms <- lapply(problem$columns, function(j)
    varExp(form = as.formula(paste0("~ x", j))))
  weights <- if (length(var_terms) == 1) var_terms[[1]] else do.call(varComb, var_terms)
  fit <- quietly(gls(mean_formula, data = frame, method = "ML", weights = weights,
                     control = control))
  gls_cases[[length(gls_cases) + 1]] <- list(
    dataset = problem$dataset, variant = problem$variant,
    columns = as.list(problem$columns),
    coef = unname(coef(fit$value)), sigma = fit$value$sigma,
    t = unname(unlist(coef(fit$value$modelStruct$varStruct, unconstrained = FALSE))),
    log_likelihood = as.numeric(logLik(fit$value)),
    vcov = unclass(unname(vcov(fit$value))),
    warnings = as.list(fit$warnings))
}
out$gls <- gls_cases

writeLines(json(out), "tests/data/r/real_data_oracles.json")
