"""REST routes, one module per resource; shared dependencies are ``Annotated`` aliases in
``deps``."""
