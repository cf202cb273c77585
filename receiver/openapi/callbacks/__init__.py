"""The providers' callback endpoints: one module each, and the answers they share."""
