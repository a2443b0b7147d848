"""What the API does, behind its routes: keyword-only functions the route modules call."""
