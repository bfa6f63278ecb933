"""`shoal serve`: the prediction service, the REST API over what the CLI does, and the pages."""
