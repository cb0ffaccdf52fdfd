"""The web pages of the api service (HTML, scripts and styles served by us)."""
