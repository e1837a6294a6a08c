"""The gateway agent: MQTT in, validation, detection, durable outbox, forwarding to the cloud."""
