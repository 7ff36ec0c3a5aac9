"""Operations built on the engine, one module each: evaluate, generate, export, load, inspect, plot, study."""
