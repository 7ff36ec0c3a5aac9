"""`ganforge benchmark`: training throughput of variants side by side (`training`), the attention layer alone
(`attention`), and the data loader (`loader`). Each drives the engine's step or data stream directly."""
