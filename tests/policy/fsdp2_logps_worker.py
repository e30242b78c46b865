"""Run by tests/policy/test_logps_fsdp2.py under ``torchrun --nproc_per_node 2``: the chunked
log-prob path on an FSDP2-sharded tiny Llama (raw ``fully_shard`` on a CPU/gloo mesh) against the
same model unsharded, values and gradients; writes rank 0's comparison to argv[1]."""

import json
import sys

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from transformers import LlamaConfig, LlamaForCausalLM

from prefkit.policy.encoding import build_batch
from prefkit.policy.logps import sequence_logps

dist.init_process_group("gloo")
rank = dist.get_rank()
torch.manual_seed(0)
config = LlamaConfig(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=4, max_position_embeddings=64, tie_word_embeddings=False,
                     attn_implementation="sdpa")
reference = LlamaForCausalLM(config).double()
sharded = LlamaForCausalLM(config).double()
sharded.load_state_dict(reference.state_dict())
mesh = init_device_mesh("cpu", (dist.get_world_size(),))
for layer in sharded.model.layers:
    fully_shard(layer, mesh=mesh)
fully_shard(sharded, mesh=mesh)

g = torch.Generator().manual_seed(1)
prompts = [torch.randint(1, 512, (n,), generator=g).tolist() for n in (3, 5, 2, 4)]
responses = [torch.randint(1, 512, (n,), generator=g).tolist() for n in (6, 2, 7, 4)]
batch = build_batch(prompts, responses, pad_id=0, max_length=32)

want, _ = sequence_logps(reference, batch, chunk_size=3)
want.sum().backward()
got, _ = sequence_logps(sharded, batch, chunk_size=3)
got.sum().backward()
head_grad = sharded.lm_head.weight.grad.full_tensor()
layer_grad = sharded.model.layers[0].mlp.down_proj.weight.grad.full_tensor()
result = {
    "values": float((got - want).abs().max()),
    "head_grad": float((head_grad - reference.lm_head.weight.grad).abs().max()),
    "layer_grad": float((layer_grad - reference.model.layers[0].mlp.down_proj.weight.grad).abs().max()),
    "head_grad_norm": float(reference.lm_head.weight.grad.norm()),
    "head_is_dtensor": type(sharded.lm_head.weight).__name__,
}
if rank == 0:
    with open(sys.argv[1], "w") as handle:
        json.dump(result, handle)
dist.destroy_process_group()
