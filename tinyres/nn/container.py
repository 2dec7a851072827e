from tinyres.nn import functional as F
from tinyres.nn.module import Module


class Sequential(Module):
    """Modules applied one after the other; they are named "0", "1", ... in ``state_dict``."""

    def __init__(self, *modules):
        super().__init__()
        for i, module in enumerate(modules):
            if not isinstance(module, Module):
                raise TypeError(f"Sequential: item {i} is a {type(module).__name__}, not a Module")
            setattr(self, str(i), module)

    def __len__(self):
        return sum(1 for _ in self.children())

    def __getitem__(self, i):
        return list(self.children())[i]

    def __iter__(self):
        return self.children()

    def forward(self, x):
        for module in self.children():
            x = module(x)
        return x


class Flatten(Module):
    """Merge all axes from ``start_axis`` on: (N, C, H, W) -> (N, C*H*W)."""

    def __init__(self, start_axis=1):
        super().__init__()
        self.start_axis = start_axis

    def forward(self, x):
        return F.flatten(x, self.start_axis)
