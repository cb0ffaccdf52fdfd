"""api: the read and manage side: alerts, observations, points, light curves, accounts."""
