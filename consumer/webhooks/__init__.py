"""The return path's HTTP edge: Twilio's StatusCallback and inbound-message webhooks into Kafka."""
