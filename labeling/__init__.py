"""Human review in Label Studio: labelling config, push tasks, pull/webhook annotations, resolve."""
