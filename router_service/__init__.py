"""The router: the stateless gRPC data plane between memOS and Ollama / vLLM."""
