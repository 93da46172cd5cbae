"""vaultd/http: the aiohttp application. Vault's paths, envelope and status codes; no business logic."""
