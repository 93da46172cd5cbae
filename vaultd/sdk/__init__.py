"""vaultd/sdk: the only surface engines may import. Requests, responses, path declarations, storage views, errors."""
