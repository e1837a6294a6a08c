"""HTTP routers of the cloud API, one module per resource."""
