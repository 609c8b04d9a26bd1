"""Connect: Entra ID sign-in (auth code + PKCE, client credentials), encrypted token store, sign-in routes."""
