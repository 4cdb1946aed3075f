"""REST and WebSocket routers of the Gateway, one module per seed resource."""
