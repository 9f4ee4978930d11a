"""Speed benchmark on the MovieLens-1M shapes (no data needed).

``python launch.py --config configs/bench.py --workdir runs/bench`` writes ``bench.json``;
``configs/bench.py:large``: a 1M-item catalogue with the sampled softmax, ranked in item chunks.
"""

import ml_collections

from durgru_jax.base_config import get_base_config, parse_variant

CHOICES = {"variant": ("ml1m", "large", "data")}  # the argument after ":", default first


def get_config(arg: str = ""):
    variant = parse_variant(arg, CHOICES, config="bench")["variant"]
    c = get_base_config()
    c.bench = b = ml_collections.ConfigDict()
    b.n_items = 3706  # MovieLens-1M catalogue
    b.max_len = 200  # sequence length of a training window
    b.full_rows = True  # every row a full window (long histories are cut into full windows)
    b.n_input_contexts = 4  # aGRU input contexts (e.g. hour-of-day buckets)
    b.n_transfer_contexts = 5  # aGRU transfer contexts (4 gap buckets + "first event")
    b.n_batches = 4  # distinct random batches cycled through
    b.train_steps = 10  # timed train steps (after compilation and one warm-up step)
    b.n_eval_users = 6040  # users ranked against the full catalogue (MovieLens-1M)
    b.eval_repeats = 3  # timed evaluations after the compiling one (the median is reported)
    b.matmul_n = 2048  # size of the square matmul that measures the machine's peak
    c.model.hidden_dim = 100
    c.model.embed_dim = 64
    c.train.batch_size = 256
    c.eval.batch_size = 1024
    if variant == "large":  # 1M-item catalogue with the sampled softmax
        b.n_items = 1_000_000
        b.n_batches = 1
        b.train_steps = 3
        b.n_eval_users = 2048
        b.eval_repeats = 1
        c.loss.target = "sampled"
        c.loss.n_sampled = 4096
        c.eval.batch_size = 256  # memory: 256 users x 65,536 items x 4 B = 64 MiB of scores
        c.eval.item_chunk = 65536
    elif variant == "data":  # preparation and cache speed of a real dataset
        b.data_config = "configs/taobao.py"  # the dataset's config file (with :variant)
        b.data_path = "data/raw/taobao/UserBehavior.csv"  # its input file
        b.data_overrides = ""  # "key=value,..." applied to that config's data group
    return c
