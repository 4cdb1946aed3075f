"""Ray Serve deployments: batched inference and the HTTP gateway."""
