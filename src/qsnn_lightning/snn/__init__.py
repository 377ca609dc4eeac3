"""The spiking core, torch only: surrogate gradient (Eq. 5), quantizers (Eq. 6-10, 14), precision
(``<W>w<K>u``), LIF neurons (Eq. 1-3) and their fused kernels, layers, the WS-DR loss (Eq. 15-16),
backbones and the memory footprint (Table 2). Importing it does not import Lightning."""
