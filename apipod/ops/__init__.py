"""Operating a service: the ``apipod jobs``/``workers``/``init`` commands and their helpers."""
