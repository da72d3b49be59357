"""Local tooling: the Cobalt sandbox, the local AWS stack, the demo and the CLI. Never deployed to Lambda."""
