"""The HTTP ingress: routes, form parsing and the error table. No torch here."""
