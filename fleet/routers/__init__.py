"""REST routers of the county console, one per resource, each checking roles as a dependency."""
