print("chatlog")
