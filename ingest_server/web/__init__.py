"""Web layer: middlewares, handlers and the route table. It calls services only."""
