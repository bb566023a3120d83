// Health module.
