"""`classify cluster`: N replicas of `classify serve` behind Envoy on one machine."""
