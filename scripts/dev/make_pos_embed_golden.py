"""Golden for the position-embedding resize (dev-only).

ALBEF's interpolate_pos_embed: keep the [CLS] row, resize the patch grid with
torch.nn.functional.interpolate(mode='bicubic', align_corners=False).
Writes testdata/pos_embed/golden.safetensors with a random (1, 1+g*g, C)
embedding and its resizes to a few grids (up and down).
Run from the repository root:  /usr/bin/python3 scripts/dev/make_pos_embed_golden.py
"""
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(0)
C = 12
out = {}
for src in (4, 5):
    pe = torch.randn(1, 1 + src * src, C)
    out["src%d" % src] = pe.contiguous()
    for dst in (3, 4, 6, 7):
        grid = pe[:, 1:].reshape(1, src, src, C).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(dst, dst), mode="bicubic", align_corners=False)
        grid = grid.permute(0, 2, 3, 1).flatten(1, 2)
        out["src%d_to%d" % (src, dst)] = torch.cat([pe[:, :1], grid], dim=1).contiguous()
save_file(out, "testdata/pos_embed/golden.safetensors", metadata={"torch": torch.__version__})
print("wrote", len(out), "tensors")
