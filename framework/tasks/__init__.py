"""Tasks: what differs between next-token modelling, classification and forecasting."""
