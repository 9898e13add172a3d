"""The networks: backbones (transformer, LSTM, GRU, RNN), shared heads, losses."""
