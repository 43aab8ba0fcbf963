"""Trainer on the batches real models take: two inputs, dict batches with the model's own loss, a step of one's own,
and a Hugging Face model built from a small config (no download); exact resume and AMP keep working in each form."""
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from workbench.core import InputError
from workbench.train import Trainer


def _data(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    image, table = torch.randn(n, 8, generator=g), torch.randn(n, 4, generator=g)
    y = ((image[:, 0] + table[:, 0]) > 0).long()
    return image, table, y


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b, self.head = nn.Linear(8, 16), nn.Linear(4, 16), nn.Linear(16, 2)

    def forward(self, image, table):
        return self.head(torch.relu(self.a(image) + self.b(table)))


class Named(Dataset):
    "Dict samples, as Hugging Face datasets give them."
    def __init__(self, image, table, y):
        self.image, self.table, self.y = image, table, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"image": self.image[i], "table": self.table[i], "labels": self.y[i]}


class OwnLoss(TwoInputs):
    "Named inputs and its own loss, in a dict output, as Hugging Face models do."
    def forward(self, image, table, labels=None):
        logits = super().forward(image, table)
        return {"logits": logits, "loss": None if labels is None else nn.functional.cross_entropy(logits, labels)}


def _loaders(kind):
    image, table, y = _data()
    train = TensorDataset(image[:192], table[:192], y[:192]) if kind == "tuple" else Named(image[:192], table[:192], y[:192])
    valid = TensorDataset(image[192:], table[192:], y[192:]) if kind == "tuple" else Named(image[192:], table[192:], y[192:])
    return DataLoader(train, batch_size=32, shuffle=True), DataLoader(valid, batch_size=64)


@pytest.mark.parametrize("kind, model", [("tuple", TwoInputs), ("dict", OwnLoss)])
def test_batches_of_several_inputs_train_and_resume_exactly(kind, model, tmp_path):
    from workbench.train import Callback, Checkpoint, StopTraining

    class StopAfterTwo(Callback):
        def after_epoch(self, t):
            if t.epoch == 2:
                raise StopTraining

    straight = Trainer(model(), *_loaders(kind), metrics=["accuracy"], seed=0, progress=False, lr=0.1)
    straight.fit(4)
    assert straight.last_metrics()["accuracy"] > 0.8
    halves = Trainer(model(), *_loaders(kind), metrics=["accuracy"], seed=0, progress=False, lr=0.1,
                     callbacks=[Checkpoint(tmp_path), StopAfterTwo()])
    halves.fit(4)  # stopped after two of the four epochs, as a killed run would be
    resumed = Trainer(model(), *_loaders(kind), metrics=["accuracy"], seed=0, progress=False, lr=0.1)
    resumed.fit(4, resume=tmp_path / "last.ckpt")
    for a, b in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)  # the same batches, the same weights
    outputs = resumed.predict(_loaders(kind)[1])
    assert outputs.shape == (64, 2)


def test_bf16_and_accumulation_on_dict_batches():
    t = Trainer(OwnLoss(), *_loaders("dict"), metrics=["accuracy"], precision="bf16", accumulate=2, progress=False, lr=0.1)
    t.fit(3)
    assert t.last_metrics()["valid_loss"] < 0.6


def test_a_step_of_ones_own():
    "A two-view objective: the loss compares the model's answers on a batch and on a noisy copy of it."
    image, table, y = _data()

    def step(trainer, batch):
        x, _ = batch
        a, b = trainer.model(x), trainer.model(x + 0.01 * torch.randn_like(x))
        return nn.functional.mse_loss(a, b) + nn.functional.cross_entropy(a, batch[1])

    dl = DataLoader(TensorDataset(image, y), batch_size=32)
    t = Trainer(nn.Linear(8, 2), dl, dl, step=step, progress=False)
    t.fit(1)
    assert t.last_metrics()["valid_loss"] == t.last_metrics()["valid_loss"]  # a number (not NaN)
    with pytest.raises(InputError, match="step must be a function of \\(trainer, batch\\)"):
        Trainer(nn.Linear(8, 2), dl, step="mse")


def test_a_batch_that_fits_no_reading_says_what_to_set():
    image, table, y = _data()
    dl = DataLoader(TensorDataset(image, table, image, y), batch_size=32)
    with pytest.raises(InputError, match="a batch of 4 items: give Trainer n_inputs="):
        Trainer(TwoInputs(), dl, progress=False).fit(1)

    class ThreeAsOne(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(20, 2)

        def forward(self, *parts):
            return self.head(torch.cat(parts, 1))

    t = Trainer(ThreeAsOne(), dl, n_inputs=3, progress=False)  # *args: how many is said, not guessed
    assert t.fit(1).history is not None


def test_a_hugging_face_model_from_a_small_config_trains_on_dict_batches(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=16, num_labels=2)
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(config)
    ids = torch.randint(1, 50, (96, 8))
    labels = (ids[:, 0] > 25).long()

    class Texts(Dataset):
        def __len__(self):
            return len(ids)

        def __getitem__(self, i):
            return {"input_ids": ids[i], "attention_mask": torch.ones(8, dtype=torch.long), "labels": labels[i]}

    dl = DataLoader(Texts(), batch_size=16)
    t = Trainer(model, dl, dl, metrics=["accuracy"], lr=5e-3, progress=False)
    t.fit(3)
    assert t.last_metrics()["accuracy"] > 0.6 and t.predict(dl).shape == (96, 2)
