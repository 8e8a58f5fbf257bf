"""The metrics service: KPIs for managers and operations, from every canonical event."""
