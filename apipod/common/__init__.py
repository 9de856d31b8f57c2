"""Names shared with services written for the original APIPod (``apipod.common.schemas``)."""
