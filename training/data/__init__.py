"""Training data: the Kubric reader/writer, synthetic scenes and clip sampling."""
