// Routing module.
