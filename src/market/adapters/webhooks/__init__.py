"""Outgoing seller webhooks: Standard Webhooks signing, the SSRF guard, the HTTP sender and the delivery worker."""
