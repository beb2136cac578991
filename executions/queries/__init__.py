"""Read models: what the console, the API listings and bench ask the database."""
