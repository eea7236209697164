"""Few-, one- and zero-shot transfer: seeded shot draws, contrastive pairs, prototypes, label templates.

    from nlptl.fewshot import ContrastivePairs, prototypes, zero_shot, sample_shots, self_train
    eight = sample_shots(train, k=8, seed=0)
    nlptl.fit(model, eight, objective=ContrastivePairs(pairs_per_example=20))
    head = prototypes(encoder, support_texts, support_labels)     # nearest class mean, no training
    zero_shot(encoder, texts, labels=["World", "Sports", "Business", "Sci/Tech"])
    add_label_sentences(eight, "This movie review is {}.", {"positive": ["good", "great"]})  # + labelled rows
"""
from .contrastive import ContrastivePairs, sample_pairs
from .prototypes import PROTOTYPE_TASK, PrototypeHead, class_means, prototypes
from .shots import sample_shots
from .zero_shot import (SelfTrainResult, add_label_sentences, label_embeddings, label_sentences, select_pseudo_labels,
                        self_train, zero_shot)

__all__ = ["ContrastivePairs", "PrototypeHead", "PROTOTYPE_TASK", "SelfTrainResult", "add_label_sentences",
           "class_means", "label_embeddings", "label_sentences", "prototypes", "sample_pairs", "sample_shots",
           "select_pseudo_labels", "self_train", "zero_shot"]
