"""Payment gateways: the sandbox (embedded default) and real providers, plus provider webhook signatures."""
