"""TopK and BatchTopK SAEs in plain PyTorch on the toy superposition data of
tests/architectures.rs (512 unit directions in 64 dimensions, ~4 active per
sample, magnitudes uniform in [0, 1)), trained with saelab's recipe (inputs
scaled so E|x|^2 = d, Adam, gradient norm clipped at 1, lr decayed over the
last 20%, unit-norm decoder rows). An independent check that BatchTopK's
slower recovery on this toy is the method's, not saelab's:

    ~/.cache/saelab/peer-venv/bin/python tests/reference/batchtopk_toy.py

Measured (2 cores, torch 2.11 CPU): TopK 400 steps at lr 5e-3: MMCS 0.991 /
0.993 (two seeds); BatchTopK the same: 0.852 / 0.855; BatchTopK 1600 steps
at lr 2e-3: 0.961. saelab gives 0.99, 0.83-0.85 and 0.962.
"""
import torch

N_TRUE, D, ACTIVE, TOKENS, FEATURES, BATCH, K = 512, 64, 4, 32768, 1024, 512, 4


def toy_data():
    directions = torch.randn(N_TRUE, D)
    directions /= directions.norm(dim=1, keepdim=True)
    active = torch.rand(TOKENS, N_TRUE) < ACTIVE / N_TRUE
    x = (active * torch.rand(TOKENS, N_TRUE)) @ directions
    return directions, x * (D / x.pow(2).sum(1).mean()).sqrt()


def codes(kind, acts):
    if kind == "topk":
        values, indices = acts.topk(K, dim=-1)
        return torch.zeros_like(acts).scatter(-1, indices, values)
    flat = acts.flatten()
    values, indices = flat.topk(K * acts.shape[0])
    return torch.zeros_like(flat).scatter(-1, indices, values).reshape(acts.shape)


def train(kind, directions, x_all, steps, lr, seed):
    torch.manual_seed(seed)
    w_dec = torch.randn(FEATURES, D)
    w_dec /= w_dec.norm(dim=1, keepdim=True)
    w_dec.requires_grad_()
    w_enc = w_dec.detach().clone().T.contiguous().requires_grad_()
    b_enc = torch.zeros(FEATURES, requires_grad=True)
    b_dec = torch.zeros(D, requires_grad=True)
    params = [w_enc, b_enc, w_dec, b_dec]
    opt = torch.optim.Adam(params, lr=lr)
    order = torch.Generator().manual_seed(seed)
    for step in range(steps):
        x = x_all[torch.randint(0, TOKENS, (BATCH,), generator=order)]
        f = codes(kind, ((x - b_dec) @ w_enc + b_enc).relu())
        x_hat = f @ w_dec + b_dec
        loss = (x - x_hat).pow(2).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (steps - step) / (0.2 * steps))
        opt.step()
        with torch.no_grad():
            w_dec /= w_dec.norm(dim=1, keepdim=True)
    with torch.no_grad():
        mmcs = (directions @ w_dec.T).max(dim=1).values.mean().item()
    print(f"{kind:9s} steps {steps:5d} lr {lr:g} seed {seed}: MMCS {mmcs:.3f}", flush=True)


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    directions, x = toy_data()
    for kind in ["topk", "batchtopk"]:
        for seed in [1, 2]:
            train(kind, directions, x, 400, 5e-3, seed)
    train("batchtopk", directions, x, 1600, 2e-3, 1)


if __name__ == "__main__":
    main()
