"""`ganforge benchmark`: training throughput of variants side by side (`training`), the attention layer alone
(`attention`), the data loader (`loader`), and the phases of `ganforge evaluate` (`evaluation`). Each drives the
engine's step, data stream or evaluation path directly."""
