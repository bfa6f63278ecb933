"""CPU transfer learning on dataset versions: models, feature cache, loops, metrics, reports."""
