"""Layer 4, the protocol: what a method is, how hyperparameters are chosen, metrics, evaluation, records, budgets."""
