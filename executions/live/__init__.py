"""Live updates: rendering changed executions and pushing them over Channels."""
