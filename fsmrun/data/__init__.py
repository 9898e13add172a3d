"""A run's data: corpus sampling and its cache, capacity checks, encoding into tensors,
batch order."""
