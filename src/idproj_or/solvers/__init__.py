"""One module per modelling ecosystem; each turns a user's model into a picklable ModelSpec."""
