//! Request validation: the rules a grant must meet before anything is stored or sent.
