"""The inspection station: a web app for officers, experts and right holders (extra `serve`)."""
