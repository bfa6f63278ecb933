

# folds of the out-of-fold label check; here, not in label_issues, so `shoal --help` and the
# listing commands need not import cleanlab and scikit-learn (3-5 s)
DEFAULT_FOLDS = 5
